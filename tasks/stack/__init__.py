"""The local stack started by `citeops up`: Prefect server, MLflow server, the serving
endpoint and a Prefect worker, as plain processes with PID files and logs under
``settings.state_dir``."""
