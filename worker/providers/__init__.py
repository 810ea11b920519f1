"""AI providers, one module each, behind one small interface (`base.Provider`)."""
