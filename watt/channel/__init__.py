"""The wire both sides share: frames (protocol), streams (endpoint), transports.

Everything here loads in a subinterpreter: standard library only.
"""
