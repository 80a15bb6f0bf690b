# Makes the project folder importable from tests (pytest puts this folder on sys.path).
