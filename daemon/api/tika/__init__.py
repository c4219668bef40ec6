"""The Apache Tika Server 3.x text API at the server root, for Tika's clients unchanged.

access (which routes are Tika's, and who may use them without a key: the auth middleware
asks), intake (how a Tika upload is read and typed), metadata (a job as Tika's JSON),
render (XHTML in Tika's shape), routes (the handlers). Every route that extracts goes
through the api's one upload path.
"""
