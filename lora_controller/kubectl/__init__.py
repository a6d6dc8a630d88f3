"""`kubectl lora`: the controller's placement from a terminal (installed as `kubectl-lora`).

It talks to the controller's HTTP API (found through its Service and the API server's service
proxy, or `--controller-url`) and to the API server, never to the controller's insides.
"""
