package x86emu

// execGeneral executes the general-purpose integer instructions: data
// movement, arithmetic and logic, shifts and rotates, bit operations,
// control transfers within the code segment and string instructions. It
// reports whether it knows the instruction; when it does, it has set RIP.
func (e *emu) execGeneral(in *inst) (bool, error) {
	return false, nil
}
