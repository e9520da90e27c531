"""The forwarding SFU: the one part of rooms/ that talks to aiortc.

Its interface is small: a MediaRoom per live room; join (publish a member's tracks and
subscribe them to the others'), answer, leave, block, audio-only, screen share, close.
"""
