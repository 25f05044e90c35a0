"""Generation: one folder per LangGraph graph (documents/, baselines/, instruct/), the settings
they are set with (settings.py), the Run each run builds once (session.py), the driver that keeps
items in flight (driver.py), the command line (run.py) and the Python API (api.py)."""
