"""`messengerd tray`: the person at the desk sees every message (issue 5).

presenter.py is the model and decides everything, with no GUI import; text.py makes a
sender's text safe to show; icon.py draws the icon; popup.py, history.py and aliases.py
are thin tkinter windows; app.py wires them to pystray and to the daemon, in process
(standalone.py) or over the control channel (attach.py).
"""
