"""The command-line edge: the `aijobs` console script, its commands, the worker's
process supervisor and the embedded servers' launcher. It may import api/ and worker/;
nothing imports it but the tests and the bench."""
