//! The kernel programs of container-startup-exporter as one embedded BPF
//! object (built from `src/probes.bpf.c` by `build.rs`).

#[repr(C, align(8))]
struct Aligned<T: ?Sized>(T);

// ELF parsing reads the object in place, so it must be 8-byte aligned.
static OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/probes.bpf.o")));

/// The BPF object (ELF with BTF) to hand to the loader.
pub fn object() -> &'static [u8] {
    &OBJECT.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn object_is_bpf_elf() {
        let o = super::object();
        assert_eq!(&o[..4], b"\x7fELF");
        assert_eq!(o.as_ptr() as usize % 8, 0);
        // e_machine EM_BPF (247), little endian
        assert_eq!(u16::from_le_bytes([o[18], o[19]]), 247);
    }
}
