package logfmt

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"vmrr/machine/cpu"
)

// CPUIDEntry is one entry of the CPUID table the guest saw (the fields of
// KVM's kvm_cpuid_entry2 that matter).
type CPUIDEntry struct{ Function, Index, Flags, EAX, EBX, ECX, EDX uint32 }

// Patch is one instruction vmrr patched in the guest image to make it exit
// (patched mode): the replayer patches the same places, and gdb and the
// shell show the original bytes.
type Patch struct {
	Addr     uint64     // guest physical address of the instruction
	Len      uint8      // bytes patched
	Original []byte     // the bytes that were there
	Instr    cpu.NonDet // the patched instruction
}

// Header describes a recording: what ran, on what machine, from when. It is
// written once, before any event, in its own checksummed record, so it can
// be read from a log killed before its first frame.
type Header struct {
	FormatVersion uint32 // set by the reader; the writer writes Version
	VMRRVersion   string
	ImagePath     string
	ImageSHA256   [32]byte
	ImageSize     uint64
	Image         []byte // optional: the image embedded (vmrr record --embed-image)
	MemoryBytes   uint64
	Boot          string // "elf64", "multiboot", "flat"
	Mode          string // "exact", "fast"
	CPUID         []CPUIDEntry
	Patches       []Patch
	TLBSync       bool
	Args          string // guest command line / extra config, free-form
	StartTime     time.Time
	Host          string // host description (kernel, CPU model, KVM flavour)
	// Accel is the CPU the recording ran on: "kvm" or "soft" (a log
	// without the field is from KVM). Replay uses the same.
	Accel string
	// ExitsOnly says the recording placed asynchronous events at the
	// guest's own exits only and its positions count exits alone (Insn is
	// 0 throughout): KVM without an exact instruction counter. Replay
	// places them alike (machine.SetExitsOnly).
	ExitsOnly bool
}

// HashImage is the image hash a header records.
func HashImage(image []byte) [32]byte { return sha256.Sum256(image) }

// CheckImage refuses an image other than the one the log was recorded
// from, by its SHA-256, with an *ImageMismatchError.
func (h *Header) CheckImage(image []byte) error {
	got := HashImage(image)
	if got != h.ImageSHA256 {
		return &ImageMismatchError{Path: h.ImagePath, Want: h.ImageSHA256, Got: got}
	}
	return nil
}

// Header fields are stored as (tag, length, value) triples, so a field added
// to version 1 later is skipped by older readers. A field that an old reader
// must not ignore needs a new format version instead.
const (
	hVMRRVersion = 1
	hImagePath   = 2
	hImageSHA256 = 3
	hImageSize   = 4
	hImage       = 5
	hMemoryBytes = 6
	hBoot        = 7
	hMode        = 8
	hCPUID       = 9
	hPatches     = 10
	hTLBSync     = 11
	hArgs        = 12
	hStartTime   = 13
	hHost        = 14
	hAccel       = 15
	hExitsOnly   = 16
)

const cpuidEntrySize = 7 * 4

func appendField(b []byte, tag uint64, v []byte) []byte {
	b = binary.AppendUvarint(b, tag)
	return appendBytes(b, v)
}

func appendUvarintField(b []byte, tag, v uint64) []byte {
	return appendField(b, tag, binary.AppendUvarint(nil, v))
}

// encodeHeader encodes a header body. Empty fields are left out.
func encodeHeader(h *Header) ([]byte, error) {
	var b []byte
	str := func(tag uint64, s string) {
		if s != "" {
			b = appendField(b, tag, []byte(s))
		}
	}
	str(hVMRRVersion, h.VMRRVersion)
	str(hImagePath, h.ImagePath)
	if h.ImageSHA256 != ([32]byte{}) {
		b = appendField(b, hImageSHA256, h.ImageSHA256[:])
	}
	if h.ImageSize != 0 {
		b = appendUvarintField(b, hImageSize, h.ImageSize)
	}
	if len(h.Image) != 0 {
		b = appendField(b, hImage, h.Image)
	}
	if h.MemoryBytes != 0 {
		b = appendUvarintField(b, hMemoryBytes, h.MemoryBytes)
	}
	str(hBoot, h.Boot)
	str(hMode, h.Mode)
	if len(h.CPUID) != 0 {
		v := binary.AppendUvarint(nil, uint64(len(h.CPUID)))
		for _, c := range h.CPUID {
			for _, w := range [...]uint32{c.Function, c.Index, c.Flags, c.EAX, c.EBX, c.ECX, c.EDX} {
				v = binary.LittleEndian.AppendUint32(v, w)
			}
		}
		b = appendField(b, hCPUID, v)
	}
	if len(h.Patches) != 0 {
		v := binary.AppendUvarint(nil, uint64(len(h.Patches)))
		for _, p := range h.Patches {
			v = binary.AppendUvarint(v, p.Addr)
			v = append(v, p.Len, byte(p.Instr))
			v = appendBytes(v, p.Original)
		}
		b = appendField(b, hPatches, v)
	}
	if h.TLBSync {
		b = appendField(b, hTLBSync, []byte{1})
	}
	str(hArgs, h.Args)
	if !h.StartTime.IsZero() {
		t, err := h.StartTime.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("start time: %w", err)
		}
		b = appendField(b, hStartTime, t)
	}
	str(hHost, h.Host)
	str(hAccel, h.Accel)
	if h.ExitsOnly {
		b = appendField(b, hExitsOnly, []byte{1})
	}
	return b, nil
}

// decodeHeader decodes a header body whose checksum was verified.
func decodeHeader(body []byte) (*Header, error) {
	h := &Header{FormatVersion: Version}
	d := &decoder{b: body}
	for d.left() > 0 && d.bad == "" {
		tag := d.uvarint()
		v := d.bytes()
		if d.bad != "" {
			break
		}
		f := &decoder{b: v}
		switch tag {
		case hVMRRVersion:
			h.VMRRVersion, f.i = string(v), len(v)
		case hImagePath:
			h.ImagePath, f.i = string(v), len(v)
		case hImageSHA256:
			if len(v) != len(h.ImageSHA256) {
				return nil, fmt.Errorf("image hash is %d bytes, not %d", len(v), len(h.ImageSHA256))
			}
			f.i = copy(h.ImageSHA256[:], v)
		case hImageSize:
			h.ImageSize = f.uvarint()
		case hImage:
			h.Image, f.i = v, len(v)
		case hMemoryBytes:
			h.MemoryBytes = f.uvarint()
		case hBoot:
			h.Boot, f.i = string(v), len(v)
		case hMode:
			h.Mode, f.i = string(v), len(v)
		case hCPUID:
			n := f.count(cpuidEntrySize)
			h.CPUID = make([]CPUIDEntry, n)
			for i := range h.CPUID {
				c := &h.CPUID[i]
				for _, w := range [...]*uint32{&c.Function, &c.Index, &c.Flags, &c.EAX, &c.EBX, &c.ECX, &c.EDX} {
					*w = f.u32()
				}
			}
		case hPatches:
			n := f.count(3)
			h.Patches = make([]Patch, n)
			for i := range h.Patches {
				p := &h.Patches[i]
				p.Addr = f.uvarint()
				p.Len = f.byte1()
				p.Instr = cpu.NonDet(f.byte1())
				p.Original = f.bytes()
			}
		case hTLBSync:
			h.TLBSync = f.byte1() != 0
		case hArgs:
			h.Args, f.i = string(v), len(v)
		case hStartTime:
			if err := h.StartTime.UnmarshalBinary(v); err != nil {
				return nil, fmt.Errorf("start time: %w", err)
			}
			f.i = len(v)
		case hHost:
			h.Host, f.i = string(v), len(v)
		case hAccel:
			h.Accel, f.i = string(v), len(v)
		case hExitsOnly:
			h.ExitsOnly = f.byte1() != 0
		default:
			continue // a field from a later vmrr that this one can ignore
		}
		if f.bad != "" {
			return nil, fmt.Errorf("field %d: %s", tag, f.bad)
		}
		if f.left() != 0 {
			return nil, fmt.Errorf("field %d has %d bytes too many", tag, f.left())
		}
	}
	if d.bad != "" {
		return nil, errors.New(d.bad)
	}
	return h, nil
}
