//! The relay's daemons: the CoAP proxy, the sink, and the client commands.
