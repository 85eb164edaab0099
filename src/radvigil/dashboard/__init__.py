"""The web dashboard the service serves at ``/dashboard``.

Server-rendered Jinja2 pages over the service's own state and stores: overview, drift,
performance, review, models and audit. A user signs in with an API key (kept in an HttpOnly,
SameSite=Strict cookie) and sees what the key's role allows; every state-changing form carries a
CSRF token and calls the same service functions, with the same role checks, as the JSON API.
"""
