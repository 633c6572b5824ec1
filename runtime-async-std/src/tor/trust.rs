//! What makes a control port tor's. Anything on this machine can listen on 127.0.0.1:9051
//! and answer like tor; the one we hand our onion key to (`ADD_ONION`) must prove it is
//! tor. SAFECOOKIE does that, but only if the cookie file it names could not have been
//! written by the impostor: so the file must belong to root, to the tor user, or to us,
//! and be writable by nobody else (nor readable by everyone, which would make its content
//! known). NULL authentication proves nothing, and plain COOKIE sends the cookie to
//! whoever listens: both need the user's explicit consent.

use std::path::{Path, PathBuf};

use super::TorError;

/// Accounts tor runs as on the systems we know (Debian and derivatives, Fedora and Arch,
/// OpenBSD, FreeBSD).
const TOR_USERS: [&str; 4] = ["debian-tor", "tor", "_tor", "toranon"];

/// What a control port must show before we trust it with secrets.
#[derive(Debug, Clone, Default)]
pub struct ControlTrust {
    /// Sent only to a port that offers `HASHEDPASSWORD`.
    pub password: Option<String>,
    /// Accounts (uids) whose cookie files may be tor's.
    pub cookie_owners: Vec<u32>,
    /// A tor we launched: its cookie must be exactly this file.
    pub cookie_path: Option<PathBuf>,
    /// Accept a port with no authentication at all (anyone on the machine controls it).
    pub allow_null: bool,
    /// Accept plain COOKIE authentication (sends the cookie itself to the port).
    pub allow_plain_cookie: bool,
}

impl ControlTrust {
    /// A tor someone else runs (a system tor, Tor Browser's): cookie files of root, of the
    /// tor accounts in `/etc/passwd`, and of `our_uid` (Tor Browser runs as its user).
    pub fn system(our_uid: Option<u32>) -> Self {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let mut owners = vec![0];
        owners.extend(tor_uids(&passwd));
        owners.extend(our_uid);
        Self {
            cookie_owners: owners,
            ..Self::default()
        }
    }

    /// A tor we launched with `CookieAuthentication 1`: its cookie is `path`, in our own
    /// private directory, and must be ours.
    pub fn launched(path: PathBuf, our_uid: Option<u32>) -> Self {
        Self {
            cookie_owners: our_uid.into_iter().collect(),
            cookie_path: Some(path),
            ..Self::default()
        }
    }

    /// Whether the cookie file a control port named may be trusted: see the module
    /// documentation.
    pub fn check_cookie_file(&self, path: &Path) -> Result<(), TorError> {
        let untrusted = |why: String| TorError::UntrustedCookie {
            path: path.to_owned(),
            why,
        };
        let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
        if let Some(expected) = &self.cookie_path
            && canonical(expected) != canonical(path)
        {
            return Err(untrusted(format!(
                "is not the cookie of the tor p2pchat started ({})",
                expected.display()
            )));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let meta = std::fs::metadata(path).map_err(|e| TorError::Cookie {
                path: path.to_owned(),
                why: e.to_string(),
            })?;
            cookie_metadata_is_trusted(meta.uid(), meta.mode(), &self.cookie_owners)
                .map_err(untrusted)?;
        }
        Ok(())
    }
}

/// The checks on a cookie file's owner and mode, apart from the file system so they can
/// be tested on every combination.
fn cookie_metadata_is_trusted(uid: u32, mode: u32, owners: &[u32]) -> Result<(), String> {
    if !owners.contains(&uid) {
        return Err(format!(
            "belongs to user id {uid}, which is neither root, the tor user, nor you"
        ));
    }
    if mode & 0o022 != 0 {
        return Err(format!(
            "can be written by other users (mode {:o})",
            mode & 0o777
        ));
    }
    if mode & 0o004 != 0 {
        return Err(format!(
            "can be read by every user (mode {:o}), so its content is no secret",
            mode & 0o777
        ));
    }
    Ok(())
}

/// The uids of the tor accounts listed in `passwd` (the text of `/etc/passwd`).
fn tor_uids(passwd: &str) -> Vec<u32> {
    passwd
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let uid = fields.nth(1)?.parse().ok()?;
            TOR_USERS.contains(&name).then_some(uid)
        })
        .collect()
}

/// Our own uid: the owner of a directory we created (the data directory). Unix only.
pub fn owner_of(dir: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(dir).ok().map(|m| m.uid())
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tor_accounts_are_found_in_passwd_and_nothing_else_is() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      debian-tor:x:107:113::/var/lib/tor:/bin/false\n\
                      mallory:x:1001:1001::/home/mallory:/bin/sh\n\
                      broken line\n\
                      _tor:*:577:577::/var/empty:/sbin/nologin\n";
        assert_eq!(tor_uids(passwd), vec![107, 577]);
    }

    #[test]
    fn a_cookie_of_another_user_or_writable_or_readable_by_all_is_refused() {
        let owners = [0, 107, 1000];
        assert!(cookie_metadata_is_trusted(107, 0o100640, &owners).is_ok());
        assert!(cookie_metadata_is_trusted(1000, 0o100600, &owners).is_ok());
        let other = cookie_metadata_is_trusted(1001, 0o100600, &owners).unwrap_err();
        assert!(other.contains("user id 1001"), "{other}");
        let writable = cookie_metadata_is_trusted(0, 0o100622, &owners).unwrap_err();
        assert!(writable.contains("written by other users"), "{writable}");
        let group_writable = cookie_metadata_is_trusted(0, 0o100660, &owners).unwrap_err();
        assert!(group_writable.contains("written"), "{group_writable}");
        let readable = cookie_metadata_is_trusted(107, 0o100644, &owners).unwrap_err();
        assert!(readable.contains("read by every user"), "{readable}");
    }

    #[test]
    fn a_launched_tor_accepts_only_its_own_cookie_path() {
        let trust = ControlTrust::launched(PathBuf::from("/data/tor/control_auth_cookie"), None);
        let e = trust
            .check_cookie_file(Path::new("/tmp/evil_cookie"))
            .unwrap_err();
        assert!(
            e.to_string().contains("is not the cookie of the tor"),
            "{e}"
        );
    }
}
