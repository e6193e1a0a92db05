//! Connector state: ports and adapters.
