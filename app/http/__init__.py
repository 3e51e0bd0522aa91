"""HTTP plumbing: ASGI middleware, one concern a module, the bridge into Flask, and the gunicorn worker.

Outermost first, a request passes `journal` (when the journal is on),
`memory` (the heap given back after a large body), `methods` (HEAD and
OPTIONS answered without a body), `envelope` (its id, the last-resort
error), `request_checks`, `spec_document`, `body_limit`,
then Connexion's own middleware (the spec's routing, security and validation)
and `bridge`, which runs the Flask view on a thread. `worker` is the gunicorn
worker class all of this runs in. Nothing here knows the API's routes.
"""
