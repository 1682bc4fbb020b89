"""Unbound extension singletons; create_app binds them."""
from __future__ import annotations

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect

from ..models.base import Base
from . import ratelimit_store  # noqa: F401  (registers siwa-web's store as siwa-memory://)

# A request's session only holds what that request read or wrote, so nothing needs reloading
# after its commit; expiring would cost a SELECT per object touched afterwards (hot paths
# re-read with compare-and-set statements where concurrency matters).
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address, default_limits=[])
