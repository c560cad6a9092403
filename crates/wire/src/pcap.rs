//! The capture file format: every datagram of a run, as Wireshark and tshark open it. The
//! node's wire tap writes it, and anything that runs roles without sockets can write it the same
//! way (it takes the time of each datagram; it reads no clock).
//!
//! Written by hand on purpose: the classic libpcap format is a 24-byte file header followed by
//! 16-byte record headers (<https://wiki.wireshark.org/Development/LibpcapFileFormat>), and the
//! IPv4 and UDP headers we synthesise around each payload are 28 bytes with one checksum each.
//! A crate (pcap-file) would bring a reader, pcapng and a dependency tree for ~100 lines we
//! fully test here.
//!
//! Link type `LINKTYPE_RAW` (101): each record starts directly with the IP header, version 4 or
//! 6 as the addresses of the datagram say. Timestamps are microseconds.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

/// The magic number of a classic pcap file with microsecond timestamps (written little-endian).
pub const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// `LINKTYPE_RAW`: the packet begins with an IPv4 or IPv6 header.
pub const LINKTYPE_RAW: u32 = 101;
/// Maximum bytes captured per packet, as announced in the file header.
pub const SNAPLEN: u32 = 65_535;

const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const UDP_HEADER_LEN: usize = 8;
const IPPROTO_UDP: u8 = 17;

/// Writes a classic pcap stream, one record per UDP datagram.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    ip_id: u16,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header and returns the writer.
    ///
    /// # Errors
    ///
    /// Any I/O error of `out`.
    pub fn new(mut out: W) -> io::Result<Self> {
        let mut header = Vec::with_capacity(24);
        header.extend_from_slice(&MAGIC_MICROS.to_le_bytes());
        header.extend_from_slice(&2u16.to_le_bytes()); // version major
        header.extend_from_slice(&4u16.to_le_bytes()); // version minor
        header.extend_from_slice(&0i32.to_le_bytes()); // thiszone: UTC
        header.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        header.extend_from_slice(&SNAPLEN.to_le_bytes());
        header.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        out.write_all(&header)?;
        Ok(Self { out, ip_id: 0 })
    }

    /// Appends one UDP datagram from `src` to `dst` sent at `time`.
    ///
    /// A payload too large for one IP packet, or a datagram whose two addresses are not of the
    /// same IP version, is refused with [`io::ErrorKind::InvalidInput`].
    ///
    /// # Errors
    ///
    /// As above, and any I/O error of the underlying writer.
    pub fn write_datagram(
        &mut self,
        time: SystemTime,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) -> io::Result<()> {
        let packet = match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                self.ip_id = self.ip_id.wrapping_add(1);
                ipv4_udp_packet(self.ip_id, s, src.port(), d, dst.port(), payload)?
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                ipv6_udp_packet(s, src.port(), d, dst.port(), payload)?
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "source and destination of different IP versions",
                ));
            }
        };
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let seconds = u32::try_from(since.as_secs()).unwrap_or(u32::MAX);
        let len = u32::try_from(packet.len()).map_err(|_| too_large())?;
        let mut record = Vec::with_capacity(16 + packet.len());
        record.extend_from_slice(&seconds.to_le_bytes());
        record.extend_from_slice(&since.subsec_micros().to_le_bytes());
        record.extend_from_slice(&len.min(SNAPLEN).to_le_bytes()); // captured length
        record.extend_from_slice(&len.to_le_bytes()); // original length
        record.extend_from_slice(&packet[..packet.len().min(SNAPLEN as usize)]);
        self.out.write_all(&record)
    }

    /// Flushes the underlying writer.
    ///
    /// # Errors
    ///
    /// Any I/O error of the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Returns the underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

fn too_large() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "datagram too large for one IP packet",
    )
}

fn udp_header(src_port: u16, dst_port: u16, payload: &[u8]) -> io::Result<[u8; UDP_HEADER_LEN]> {
    let len = u16::try_from(UDP_HEADER_LEN + payload.len()).map_err(|_| too_large())?;
    let mut h = [0u8; UDP_HEADER_LEN];
    h[0..2].copy_from_slice(&src_port.to_be_bytes());
    h[2..4].copy_from_slice(&dst_port.to_be_bytes());
    h[4..6].copy_from_slice(&len.to_be_bytes());
    Ok(h)
}

/// The UDP checksum over a pseudo-header, the UDP header (checksum zero) and the payload
/// (RFC 768; RFC 8200 section 8.1 for IPv6). Zero is sent as 0xffff.
fn udp_checksum(pseudo: &[u8], udp: &[u8; UDP_HEADER_LEN], payload: &[u8]) -> u16 {
    let mut sum = 0u32;
    for part in [pseudo, udp.as_slice(), payload] {
        sum = ones_complement_add(sum, part);
    }
    match fold(sum) {
        0 => 0xffff,
        c => c,
    }
}

fn ones_complement_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(u16::from_be_bytes([*last, 0]));
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The loop leaves at most 16 bits.
    !(u16::try_from(sum).unwrap_or(u16::MAX))
}

/// The IPv4 header checksum (RFC 791): one's complement of the one's complement sum of the
/// header's 16-bit words, computed with the checksum field zero.
#[must_use]
pub fn ipv4_header_checksum(header: &[u8]) -> u16 {
    fold(ones_complement_add(0, header))
}

fn ipv4_udp_packet(
    id: u16,
    src: Ipv4Addr,
    src_port: u16,
    dst: Ipv4Addr,
    dst_port: u16,
    payload: &[u8],
) -> io::Result<Vec<u8>> {
    let total =
        u16::try_from(IPV4_HEADER_LEN + UDP_HEADER_LEN + payload.len()).map_err(|_| too_large())?;
    let mut ip = [0u8; IPV4_HEADER_LEN];
    ip[0] = 0x45; // version 4, IHL 5 words
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[4..6].copy_from_slice(&id.to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64; // TTL
    ip[9] = IPPROTO_UDP;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let checksum = ipv4_header_checksum(&ip);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());

    let mut udp = udp_header(src_port, dst_port, payload)?;
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.octets());
    pseudo[9] = IPPROTO_UDP;
    pseudo[10..12].copy_from_slice(&udp[4..6]);
    let c = udp_checksum(&pseudo, &udp, payload);
    udp[6..8].copy_from_slice(&c.to_be_bytes());

    let mut packet = Vec::with_capacity(usize::from(total));
    packet.extend_from_slice(&ip);
    packet.extend_from_slice(&udp);
    packet.extend_from_slice(payload);
    Ok(packet)
}

fn ipv6_udp_packet(
    src: Ipv6Addr,
    src_port: u16,
    dst: Ipv6Addr,
    dst_port: u16,
    payload: &[u8],
) -> io::Result<Vec<u8>> {
    let mut udp = udp_header(src_port, dst_port, payload)?;
    let mut ip = [0u8; IPV6_HEADER_LEN];
    ip[0] = 0x60; // version 6
    ip[4..6].copy_from_slice(&udp[4..6]); // payload length = UDP length
    ip[6] = IPPROTO_UDP;
    ip[7] = 64; // hop limit
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst.octets());

    let mut pseudo = [0u8; 40];
    pseudo[0..16].copy_from_slice(&src.octets());
    pseudo[16..32].copy_from_slice(&dst.octets());
    pseudo[34..36].copy_from_slice(&udp[4..6]);
    pseudo[39] = IPPROTO_UDP;
    let c = udp_checksum(&pseudo, &udp, payload);
    udp[6..8].copy_from_slice(&c.to_be_bytes());

    let mut packet = Vec::with_capacity(IPV6_HEADER_LEN + UDP_HEADER_LEN + payload.len());
    packet.extend_from_slice(&ip);
    packet.extend_from_slice(&udp);
    packet.extend_from_slice(payload);
    Ok(packet)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    #[test]
    fn header_and_one_ipv4_record() -> io::Result<()> {
        let mut w = PcapWriter::new(Vec::new())?;
        let t = UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456);
        w.write_datagram(t, addr("127.0.0.2:4000"), addr("127.0.0.3:5000"), b"hello")?;
        let bytes = w.into_inner();
        assert_eq!(&bytes[0..4], &MAGIC_MICROS.to_le_bytes());
        assert_eq!(&bytes[20..24], &LINKTYPE_RAW.to_le_bytes());
        let rec = &bytes[24..];
        assert_eq!(&rec[0..4], &1_700_000_000u32.to_le_bytes());
        assert_eq!(&rec[4..8], &123_456u32.to_le_bytes());
        assert_eq!(&rec[8..12], &33u32.to_le_bytes());
        let ip = &rec[16..];
        assert_eq!(ip.len(), 33);
        // A header with its checksum in place sums to zero.
        assert_eq!(ipv4_header_checksum(&ip[..20]), 0);
        assert_eq!(&ip[20..22], &4000u16.to_be_bytes());
        assert_eq!(&ip[28..], b"hello");
        Ok(())
    }

    #[test]
    fn ipv4_checksum_known_answer() {
        // The classic example (Wikipedia, "IPv4 header checksum"): checksum 0xb861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_header_checksum(&h), 0xb861);
    }

    #[test]
    fn udp_checksum_verifies() -> io::Result<()> {
        let p = ipv4_udp_packet(1, Ipv4Addr::LOCALHOST, 1, Ipv4Addr::LOCALHOST, 2, b"abc")?;
        let mut pseudo = [0u8; 12];
        pseudo[0..4].copy_from_slice(&p[12..16]);
        pseudo[4..8].copy_from_slice(&p[16..20]);
        pseudo[9] = IPPROTO_UDP;
        pseudo[10..12].copy_from_slice(&p[24..26]);
        let sum = ones_complement_add(ones_complement_add(0, &pseudo), &p[20..]);
        assert_eq!(fold(sum), 0);
        Ok(())
    }

    #[test]
    fn mixed_versions_refused() -> io::Result<()> {
        let mut w = PcapWriter::new(Vec::new())?;
        let r = w.write_datagram(
            SystemTime::now(),
            addr("127.0.0.1:1"),
            addr("[::1]:2"),
            b"x",
        );
        assert!(r.is_err());
        w.write_datagram(SystemTime::now(), addr("[::1]:1"), addr("[::1]:2"), b"x")?;
        Ok(())
    }
}
