"""Azure Functions entry point hosting the names sample API (seed 000's architecture).

Every route of the FastAPI app is served by one HTTP-triggered function with function-level
auth: callers must send ``x-functions-key``. Tollway sits in front (``tollway.yaml`` next to
this file) and injects that header from a secret named value, so API clients only ever see
their Tollway subscription key.

Deploy this folder with Azure Functions Core Tools (``func azure functionapp publish <app>``);
``requirements.txt`` installs Tollway, which contains the sample.
"""

from __future__ import annotations

import azure.functions as func

from tollway.samples.names import app as names_app

app = func.AsgiFunctionApp(app=names_app, http_auth_level=func.AuthLevel.FUNCTION)
