"""tracer: blockchain-backed goods traceability for cross-border e-commerce bonded imports.

Imports point one way: ``api -> tracer -> (web3, sqlmodel, qrcode)``; nothing here imports FastAPI.
"""

__version__ = "0.1.0"
