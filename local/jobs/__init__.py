"""Python files that local jobs run (``spark_python_task``); never imported by the app."""
