# Makes the project folder importable from tests (pytest puts this folder on sys.path),
# and loads shipml's pytest plugin: the fixtures model, holdout, dataset, reference,
# server_url and results_dir, and the suite markers data, model, api, browser.
pytest_plugins = ["shipml.testing.plugin"]
