"""The spec machinery: openapi.yaml turned into the checks every request passes.

`loading` reads the spec once (with its two switches: unknown fields, admin
routes); `validators` are Connexion's validators with the API's wording;
`fastcheck` is the compiled yes/no check for the common, valid request;
`cross_field` holds the rules between fields that no schema can state; and
`problems` turns Connexion's problems (validation, security, routing) into
the API's errors.
"""
