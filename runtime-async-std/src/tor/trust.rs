//! What makes a control port tor's. Anything on this machine can listen on 127.0.0.1:9051
//! and answer like tor; the one we hand our onion key to (`ADD_ONION`) must prove it is
//! tor. SAFECOOKIE does that, but only if the content of the cookie file it names is known
//! to nobody but tor and us: so the file must belong to root, to the tor user, or to us,
//! be writable by nobody else, readable by no other user, and readable by its group only
//! if every member of that group is root, a tor account or us. NULL authentication proves
//! nothing, and plain COOKIE sends the cookie to whoever listens: both need the user's
//! explicit consent.
//!
//! The file is opened once and every check is made on what was opened (`fstat` of the
//! descriptor that is then read), never on a path that is looked up again: an impostor
//! who names a path in its own directory and swaps it between a trusted file and its own
//! cannot make us check one and read the other. The path is walked one component at a
//! time without following symbolic links, except links that belong to root, a tor
//! account or us (`/var/run → /run`, say).

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use zeroize::Zeroizing;

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

    /// Reads the cookie file a control port named, if it may be trusted (see the module
    /// documentation): 32 bytes.
    pub fn read_cookie(&self, path: &Path) -> Result<Zeroizing<Vec<u8>>, TorError> {
        let untrusted = |why: String| TorError::UntrustedCookie {
            path: path.to_owned(),
            why,
        };
        let unreadable = |why: String| TorError::Cookie {
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
        let file = self.open_cookie(path).map_err(|e| match e {
            OpenError::Untrusted(why) => untrusted(why),
            OpenError::Io(e) => unreadable(e.to_string()),
        })?;
        let mut cookie = Zeroizing::new(Vec::with_capacity(33));
        // One byte more than a cookie: a longer file is refused, not cut.
        file.take(33)
            .read_to_end(&mut cookie)
            .map_err(|e| unreadable(e.to_string()))?;
        if cookie.len() != 32 {
            return Err(unreadable(format!(
                "{} bytes instead of 32",
                if cookie.len() > 32 {
                    "more than 32".to_owned()
                } else {
                    cookie.len().to_string()
                }
            )));
        }
        Ok(cookie)
    }

    /// Opens the cookie file and checks what was opened.
    #[cfg(unix)]
    fn open_cookie(&self, path: &Path) -> Result<std::fs::File, OpenError> {
        let fd = open_without_untrusted_links(path, &self.cookie_owners)?;
        let stat = rustix::fs::fstat(&fd).map_err(io)?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(OpenError::Untrusted("is not a regular file".into()));
        }
        let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let members = group_members(stat.st_gid, &group, &passwd);
        cookie_metadata_is_trusted(stat.st_uid, stat.st_mode, &self.cookie_owners, &members)
            .map_err(OpenError::Untrusted)?;
        Ok(std::fs::File::from(fd))
    }

    #[cfg(not(unix))]
    fn open_cookie(&self, path: &Path) -> Result<std::fs::File, OpenError> {
        std::fs::File::open(path).map_err(OpenError::Io)
    }
}

/// Why a cookie file was not opened.
enum OpenError {
    /// It, or a link on the way to it, could have been made by an impostor.
    Untrusted(String),
    /// The system said no.
    Io(std::io::Error),
}

#[cfg(unix)]
fn io(e: rustix::io::Errno) -> OpenError {
    OpenError::Io(e.into())
}

/// Most symbolic links followed on the way to a cookie file (as the kernel's own limit).
const MAX_LINKS: usize = 40;

/// Opens `path` for reading, one component at a time from `/` (or the working directory),
/// following a symbolic link only if it belongs to one of `owners`. Every component is
/// opened relative to the directory opened before it, so nothing is looked up twice.
#[cfg(unix)]
fn open_without_untrusted_links(
    path: &Path,
    owners: &[u32],
) -> Result<rustix::fd::OwnedFd, OpenError> {
    use rustix::fs::{CWD, FileType, Mode, OFlags, fstat, openat, readlinkat};
    use std::os::unix::ffi::OsStrExt;

    let at_path = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let start = |absolute: bool| {
        openat(
            CWD,
            if absolute { "/" } else { "." },
            at_path,
            Mode::empty(),
        )
    };
    let mut dir = start(path.is_absolute()).map_err(io)?;
    // What is left to walk, last component first.
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    push_components(&mut rest, path);
    let mut links = 0;
    while let Some(name) = rest.pop() {
        let handle = openat(&dir, name.as_os_str(), at_path, Mode::empty()).map_err(io)?;
        let stat = fstat(&handle).map_err(io)?;
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Symlink => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(OpenError::Untrusted("has too many symbolic links".into()));
                }
                if !owners.contains(&stat.st_uid) {
                    return Err(OpenError::Untrusted(format!(
                        "is reached through a symbolic link ({}) of user id {}, which is \
                         neither root, the tor user, nor you",
                        name.to_string_lossy(),
                        stat.st_uid
                    )));
                }
                // Read the link we hold (an empty path names it), not the name again.
                let target = readlinkat(&handle, "", Vec::new()).map_err(io)?;
                let target = PathBuf::from(std::ffi::OsStr::from_bytes(target.as_bytes()));
                if target.is_absolute() {
                    dir = start(true).map_err(io)?;
                }
                push_components(&mut rest, &target);
            }
            FileType::Directory if !rest.is_empty() => dir = handle,
            _ if rest.is_empty() => {
                // The file itself: open it for reading, not following a link swapped in
                // since (that fails), not blocking on a FIFO.
                let flags = OFlags::RDONLY
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC
                    | OFlags::NONBLOCK
                    | OFlags::NOCTTY;
                return openat(&dir, name.as_os_str(), flags, Mode::empty()).map_err(io);
            }
            _ => {
                return Err(OpenError::Io(std::io::Error::from(
                    std::io::ErrorKind::NotADirectory,
                )));
            }
        }
    }
    Err(OpenError::Io(std::io::Error::from(
        std::io::ErrorKind::IsADirectory,
    )))
}

/// Pushes `path`'s components onto `rest` so that the first is popped first.
#[cfg(unix)]
fn push_components(rest: &mut Vec<std::ffi::OsString>, path: &Path) {
    let names: Vec<std::ffi::OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    rest.extend(names.into_iter().rev());
}

/// The checks on a cookie file's owner and mode, apart from the file system so they can
/// be tested on every combination. `group_members` are the accounts of the file's group
/// (by name and uid), read only if the group may read it.
fn cookie_metadata_is_trusted(
    uid: u32,
    mode: u32,
    owners: &[u32],
    group_members: &[(String, u32)],
) -> Result<(), String> {
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
    if mode & 0o040 != 0 {
        let others: Vec<&str> = group_members
            .iter()
            .filter(|(_, uid)| !owners.contains(uid))
            .map(|(name, _)| name.as_str())
            .collect();
        if !others.is_empty() {
            return Err(format!(
                "can be read by its group, whose members include {}: any of them could pose \
                 as tor. Keep that group to tor and you, or use a control password \
                 (tor.control_password) or --tor launch",
                others.join(", ")
            ));
        }
    }
    Ok(())
}

/// The accounts in group `gid`: those `group` (the text of `/etc/group`) lists as its
/// members, and those `passwd` (of `/etc/passwd`) gives it as their primary group, by
/// name and uid (a listed name with no passwd line counts as uid `u32::MAX`: unknown, so
/// not trusted). Groups from other sources (LDAP, say) are not seen: docs/SECURITY.md.
fn group_members(gid: u32, group: &str, passwd: &str) -> Vec<(String, u32)> {
    let accounts: Vec<(&str, u32, u32)> = passwd
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let uid = fields.nth(1)?.parse().ok()?;
            let primary = fields.next()?.parse().ok()?;
            Some((name, uid, primary))
        })
        .collect();
    let uid_of = |name: &str| {
        accounts
            .iter()
            .find(|(n, ..)| *n == name)
            .map_or(u32::MAX, |(_, uid, _)| *uid)
    };
    let mut members: Vec<(String, u32)> = group
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let _name = fields.next()?;
            let g: u32 = fields.nth(1)?.parse().ok()?;
            (g == gid).then(|| fields.next().unwrap_or_default())
        })
        .flat_map(|list| list.split(',').filter(|n| !n.is_empty()))
        .map(|name| (name.to_owned(), uid_of(name)))
        .collect();
    for (name, uid, primary) in &accounts {
        if *primary == gid && !members.iter().any(|(n, _)| n == name) {
            members.push(((*name).to_owned(), *uid));
        }
    }
    members
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
        let tor_only = [("debian-tor".to_owned(), 107)];
        assert!(cookie_metadata_is_trusted(107, 0o100640, &owners, &tor_only).is_ok());
        assert!(cookie_metadata_is_trusted(1000, 0o100600, &owners, &[]).is_ok());
        let other = cookie_metadata_is_trusted(1001, 0o100600, &owners, &[]).unwrap_err();
        assert!(other.contains("user id 1001"), "{other}");
        let writable = cookie_metadata_is_trusted(0, 0o100622, &owners, &[]).unwrap_err();
        assert!(writable.contains("written by other users"), "{writable}");
        let group_writable = cookie_metadata_is_trusted(0, 0o100660, &owners, &[]).unwrap_err();
        assert!(group_writable.contains("written"), "{group_writable}");
        let readable = cookie_metadata_is_trusted(107, 0o100644, &owners, &[]).unwrap_err();
        assert!(readable.contains("read by every user"), "{readable}");
    }

    #[test]
    fn a_group_readable_cookie_is_trusted_only_while_its_group_is_tor_and_us() {
        let owners = [0, 107, 1000];
        let us = [("debian-tor".to_owned(), 107), ("alice".to_owned(), 1000)];
        assert!(cookie_metadata_is_trusted(107, 0o100640, &owners, &us).is_ok());
        let mut crowded = us.to_vec();
        crowded.push(("mallory".to_owned(), 1001));
        let e = cookie_metadata_is_trusted(107, 0o100640, &owners, &crowded).unwrap_err();
        assert!(e.contains("mallory") && e.contains("pose as tor"), "{e}");
        // The group does not matter when it cannot read the file.
        assert!(cookie_metadata_is_trusted(107, 0o100600, &owners, &crowded).is_ok());
    }

    #[test]
    fn group_members_are_the_listed_ones_and_those_whose_primary_group_it_is() {
        let passwd = "root:x:0:0::/root:/bin/bash\n\
                      debian-tor:x:107:113::/var/lib/tor:/bin/false\n\
                      alice:x:1000:1000::/home/alice:/bin/sh\n\
                      mallory:x:1001:113::/home/mallory:/bin/sh\n";
        let group = "root:x:0:\ndebian-tor:x:113:alice,ghost\nalice:x:1000:\n";
        let mut members = group_members(113, group, passwd);
        members.sort();
        assert_eq!(
            members,
            vec![
                ("alice".to_owned(), 1000),
                ("debian-tor".to_owned(), 107),
                ("ghost".to_owned(), u32::MAX),
                ("mallory".to_owned(), 1001),
            ]
        );
        assert!(group_members(4242, group, passwd).is_empty());
    }

    #[test]
    fn a_launched_tor_accepts_only_its_own_cookie_path() {
        let trust = ControlTrust::launched(PathBuf::from("/data/tor/control_auth_cookie"), None);
        let e = trust
            .read_cookie(Path::new("/tmp/evil_cookie"))
            .unwrap_err();
        assert!(
            e.to_string().contains("is not the cookie of the tor"),
            "{e}"
        );
    }

    #[cfg(unix)]
    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("p2pchat-trust-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[cfg(unix)]
    fn our_trust() -> ControlTrust {
        let uid = rustix::process::getuid().as_raw();
        ControlTrust {
            cookie_owners: vec![uid],
            ..ControlTrust::default()
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_cookie_is_read_through_links_we_own_but_not_through_a_link_of_another_user() {
        use std::os::unix::fs::{PermissionsExt, lchown, symlink};
        let d = scratch("links");
        let cookie = d.join("cookie");
        std::fs::write(&cookie, [7u8; 32]).unwrap();
        std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o600)).unwrap();
        let trust = our_trust();
        assert_eq!(&trust.read_cookie(&cookie).unwrap()[..], &[7u8; 32]);
        // Through a directory link and a file link of ours, relative parts included.
        symlink(&d, d.join("dirlink")).unwrap();
        std::fs::create_dir(d.join("inner")).unwrap();
        symlink("../cookie", d.join("inner/up")).unwrap();
        assert!(trust.read_cookie(&d.join("dirlink/cookie")).is_ok());
        assert!(trust.read_cookie(&d.join("inner/up")).is_ok());
        assert!(trust.read_cookie(&d.join("inner/../cookie")).is_ok());
        // A link that belongs to someone else is not followed.
        if rustix::process::getuid().is_root() {
            let theirs = d.join("theirs");
            symlink(&cookie, &theirs).unwrap();
            lchown(&theirs, Some(65534), Some(65534)).unwrap();
            let e = trust.read_cookie(&theirs).unwrap_err();
            assert!(e.to_string().contains("symbolic link"), "{e}");
        }
        // A FIFO is refused without blocking; so is a file longer than a cookie.
        let long = d.join("long");
        std::fs::write(&long, [1u8; 64]).unwrap();
        std::fs::set_permissions(&long, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = trust.read_cookie(&long).unwrap_err();
        assert!(e.to_string().contains("more than 32"), "{e}");
        let fifo = d.join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let e = trust.read_cookie(&fifo).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let _ = std::fs::remove_dir_all(d);
    }
}
