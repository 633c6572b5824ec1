//! One module per subcommand.

pub mod bench;
pub mod chat;
pub mod demo;
pub mod id;
pub mod init;
pub mod passphrase;
pub mod server;
pub mod sim;
