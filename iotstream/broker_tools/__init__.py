"""Tools for the Mosquitto broker: config templates, password files, rights (the dynamic
security plugin: :mod:`.dynsec`, live changes: :mod:`.dynsec_control`), a development CA.

The CLI front end is ``iotstream broker`` (:mod:`iotstream.commands.broker`); the config
templates live in ``broker/`` at the top of the source tree.
"""

from iotstream.broker_tools.passwords import (
    DEFAULT_ITERATIONS,
    PasswordFile,
    PasswordFileError,
    generate_secret,
    hash_password,
    verify_password,
)
from iotstream.broker_tools.templates import (
    BROKER_DIR,
    VARIABLES,
    Profile,
    TemplateError,
    TemplateVar,
    placeholders,
    render,
    render_file,
)

__all__ = [
    "BROKER_DIR",
    "DEFAULT_ITERATIONS",
    "VARIABLES",
    "PasswordFile",
    "PasswordFileError",
    "Profile",
    "TemplateError",
    "TemplateVar",
    "generate_secret",
    "hash_password",
    "placeholders",
    "render",
    "render_file",
    "verify_password",
]
