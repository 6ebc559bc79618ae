// Package position defines where a run stands, the one position type of
// vmrr: the machine makes positions, the log stores them, the replayer moves
// between them and the debuggers print and read them.
//
// It is a leaf package of its own because every layer needs the type and
// none may own it for the others: logfmt must not import machine, and machine
// knows nothing of logs; machine/cpu holds vCPU state, which a position is not.
package position

import (
	"fmt"
	"strconv"
	"strings"
)

// Pos is a point of a run: Exit deterministic exits have happened and Insn
// guest instructions have run since the start of the run (Insn is 0 where
// the host has no exact instruction counter). Positions order by Exit, then
// Insn; the events of a log never go backwards. docs/positions.md says what
// each count includes on each CPU.
type Pos struct{ Exit, Insn uint64 }

// Less reports whether p comes before q.
func (p Pos) Less(q Pos) bool {
	return p.Exit < q.Exit || (p.Exit == q.Exit && p.Insn < q.Insn)
}

// String prints p as EXIT:INSN, the one printed form, which Parse reads.
func (p Pos) String() string {
	return strconv.FormatUint(p.Exit, 10) + ":" + strconv.FormatUint(p.Insn, 10)
}

// Parse reads a position printed by String: EXIT:INSN in decimal. It also
// accepts EXIT alone (instruction 0 of that exit) and EXIT+INSN, the form
// gdb's "monitor goto" used to take.
func Parse(s string) (Pos, error) {
	e, i, hasInsn := strings.Cut(s, ":")
	if !hasInsn {
		e, i, hasInsn = strings.Cut(s, "+")
	}
	exit, err := strconv.ParseUint(e, 10, 64)
	if err != nil {
		return Pos{}, fmt.Errorf("bad position %q: want EXIT:INSN", s)
	}
	var insn uint64
	if hasInsn {
		if insn, err = strconv.ParseUint(i, 10, 64); err != nil {
			return Pos{}, fmt.Errorf("bad position %q: want EXIT:INSN", s)
		}
	}
	return Pos{Exit: exit, Insn: insn}, nil
}
