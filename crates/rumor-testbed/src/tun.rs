//! TUN devices: each host's one network interface, served by the emulator.
//!
//! The device carries bare IP packets (`IFF_TUN | IFF_NO_PI`): what the host
//! sends to another host's address comes out of the file descriptor, and
//! what the emulator writes in is received by the host.

use anyhow::{bail, Result};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Opens a non-blocking TUN device named `name` in the calling thread's
/// network namespace.
pub fn open(name: &str) -> Result<File> {
    if name.len() >= libc::IFNAMSIZ {
        bail!("interface name {name:?} is too long");
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/net/tun")
        .map_err(|e| anyhow::anyhow!("open /dev/net/tun: {e} (is the tun module available?)"))?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
        _pad: [0; 22],
    };
    for (d, s) in req.name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which IfReq lays out.
    if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
        bail!("TUNSETIFF {name}: {}", io::Error::last_os_error());
    }
    Ok(file)
}
