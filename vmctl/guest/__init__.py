"""Inside the VM: the Scheduled Events watcher (`vmctl guest watch`), its drain/recover hooks and
approval policy, its journal, and the systemd units that run it (`vmctl guest install`).

Pure decisions live in `events.py`; IMDS I/O in `imds.py`; the loop in `watcher.py`; the journal
in `journal.py`; units in `units.py`; the host/guest join in `story.py`. Nothing here imports the
Azure SDK (IMDS is plain HTTP inside the VM) and nothing here prints.
"""
