//! Connection ids: how the core and its runtime name a byte stream without owning it.

/// An opaque connection id. The core chooses ids for connections it asks the runtime to
/// open and for inbound connections the runtime announces; the runtime maps them to sockets.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl core::fmt::Display for ConnId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "#{}", self.0)
    }
}
