//! The registry: who is online. Wire messages and the server's sans-IO state machine.

mod bindings;
mod presence;
mod server;
mod wire;

pub use bindings::{Binding, BindingOp, Bindings, RegistryTime};
pub use server::{MAX_CLIENT_FRAME, Registry, RegistryConfig, RegistryFull, RegistryOutput};
pub use wire::{
    ClientMessage, MAX_PAGE, ONION_PROOF_CONTEXT, Presence, REGISTRATION_CONTEXT, RegisterError,
    Registration, ServerError, ServerMessage, UserRecord, onion_proof_bytes,
    registration_signed_bytes,
};

#[cfg(test)]
mod tests;
