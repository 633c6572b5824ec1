//! The registry: who is online. Wire messages and the server's sans-IO state machine.

mod bindings;
mod server;
mod wire;

pub use bindings::{Binding, BindingOp, Bindings};
pub use server::{MAX_CLIENT_FRAME, Registry, RegistryConfig, RegistryFull, RegistryOutput};
pub use wire::{
    ClientMessage, MAX_PAGE, Presence, REGISTRATION_CONTEXT, RegisterError, Registration,
    ServerError, ServerMessage, UserRecord, registration_signed_bytes,
};

#[cfg(test)]
mod tests;
