"""The extension objects, created once and registered by the app factory."""

from __future__ import annotations

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

from flask_patterns.assets import Assets
from flask_patterns.bodies import Bodies
from flask_patterns.db import Database
from flask_patterns.logs import RequestIds
from flask_patterns.outbox import Outbox
from flask_patterns.responses import JSONResponses
from flask_patterns.streams import EventStreams
from flask_patterns.tokens import Tokens

db = Database()
outbox = Outbox(db=db)
streams = EventStreams()
tokens = Tokens()
csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address)
login_manager = LoginManager()
assets = Assets()
bodies = Bodies()
responses = JSONResponses()
request_ids = RequestIds()
