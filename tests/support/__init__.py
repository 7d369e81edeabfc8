"""Support code the tests share: command-line runs, devices, the Cinder venv (no tests here)."""
