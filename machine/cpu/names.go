package cpu

import "fmt"

// NonDet is a non-deterministic instruction: one whose result the guest
// cannot predict and a replay must be given. The numbers are the kinds of
// the guest ring's entries (docs/guest-abi.md) and of the log's values
// (docs/logformat.md), so a value passes from the guest to the log and back
// unchanged; they must never be renumbered.
type NonDet uint8

// The non-deterministic instructions.
const (
	RDTSC  NonDet = 1 // one value: the TSC
	RDTSCP NonDet = 2 // two values: the TSC, then IA32_TSC_AUX
	RDRAND NonDet = 3 // one value: the random number
	RDSEED NonDet = 4 // one value: the random seed
	RDPID  NonDet = 5 // one value: the processor ID (IA32_TSC_AUX)
)

// String is the instruction's mnemonic ("rdtsc", ...); other numbers print
// as "instr(N)".
func (k NonDet) String() string {
	switch k {
	case RDTSC:
		return "rdtsc"
	case RDTSCP:
		return "rdtscp"
	case RDRAND:
		return "rdrand"
	case RDSEED:
		return "rdseed"
	case RDPID:
		return "rdpid"
	}
	return fmt.Sprintf("instr(%d)", uint8(k))
}

// ExceptionName names an exception vector as the manuals do ("#GP");
// vectors without a mnemonic print as "vector N".
func ExceptionName(v uint8) string {
	names := [...]string{"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "vector 9",
		"#TS", "#NP", "#SS", "#GP", "#PF", "vector 15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP"}
	if int(v) < len(names) {
		return names[v]
	}
	return fmt.Sprintf("vector %#x", v)
}
