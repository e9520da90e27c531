"""The room: its pages, who may enter, the room WebSocket, media signalling onto the SFU,
which node serves it, and the journal that writes what rooms do to storage."""
