package replayer

import (
	"errors"
	"fmt"

	"vmrr/logfmt"
	"vmrr/machine"
)

// Outcome is how a whole replay went.
type Outcome struct {
	Result     machine.Result    // how the replayed guest ended
	End        *logfmt.EndRecord // how the recording ended (nil if the log was cut short)
	StateHash  uint64
	Divergence *Divergence // the first mismatch, if any
	EndOfLog   error       // the log ended early (*logfmt.TruncatedError) or is damaged
	// LastCheckpoint is the index of the event after the last checkpoint
	// that matched (0 if none did).
	LastCheckpoint uint64
	// CutBetweenExits says the recording placed its events at exits only
	// and was cut between two exits (a time limit): the replay stopped at
	// the last one, and there is no final state to compare.
	CutBetweenExits bool
}

// Identical reports whether the replay reproduced the recording exactly:
// same end, same status, same final state.
func (o *Outcome) Identical() bool {
	return o.Divergence == nil && o.EndOfLog == nil && o.End != nil &&
		o.Result.Status == o.End.Status && o.StateHash == o.End.StateHash
}

// Summary is one line for people.
func (o *Outcome) Summary() string {
	switch {
	case o.Divergence != nil:
		return o.Divergence.Error()
	case o.EndOfLog != nil:
		return fmt.Sprintf("replayed to the end of the log at position %s: %v", o.Result.Pos, o.EndOfLog)
	case o.End == nil:
		return "the log has no end record"
	case o.Result.Status != o.End.Status:
		return fmt.Sprintf("replay ended with status %d (%s), the recording with %d (%s)", o.Result.Status, o.Result.Message, o.End.Status, o.End.Reason)
	case o.CutBetweenExits:
		return fmt.Sprintf("replay identical up to exit %d, where the recording was cut between two exits (%s); it kept no state there to compare", o.End.Pos.Exit, o.End.Reason)
	case o.StateHash != o.End.StateHash:
		return fmt.Sprintf("replay diverged at the end of the recording (event %d, %s): the final state (registers, memory, console output) differs: hash %#x, recorded %#x, at RIP %#x; the inputs since the last matching checkpoint (events %d to %d) are suspect",
			o.End.Events, o.End.Pos, o.StateHash, o.End.StateHash, o.Result.RIP, o.LastCheckpoint, o.End.Events)
	}
	return fmt.Sprintf("replay identical: %s", o.Result.Message)
}

// Replay runs a whole log and compares the end with the recording's.
func Replay(opt Options) (*Outcome, error) {
	e, err := Open(opt)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	return e.Run()
}

// Run replays from the current position to the end.
func (e *Engine) Run() (*Outcome, error) {
	stop := e.kickEvery(watchdogEvery)
	res, err := e.m.Run()
	stop()
	o := &Outcome{Result: res, LastCheckpoint: e.lastCheckpoint}
	var div *Divergence
	var eol *EndOfLogError
	switch {
	case errors.As(err, &div):
		o.Divergence = div
	case errors.As(err, &eol):
		o.EndOfLog = eol.Err
	case err != nil:
		return nil, err
	}
	if err != nil {
		o.Result = machine.Result{Reason: machine.ReasonStopped, Pos: e.m.Position(), RIP: e.rip()}
	}
	o.StateHash, _ = e.m.StateHash()
	if e.next != nil && e.next.Kind == logfmt.KindEnd {
		o.End = e.next.End
	} else if end := e.events.End(); end != nil {
		o.End = end
	}
	if e.hdr.ExitsOnly && o.End != nil && o.End.BetweenExits() {
		o.CutBetweenExits, o.StateHash = true, 0
	}
	if o.Divergence == nil && o.EndOfLog == nil && o.End != nil && res.Pos != o.End.Pos && res.Reason != machine.ReasonStopped {
		o.Divergence = &Divergence{Event: e.index, Pos: o.End.Pos,
			Message: fmt.Sprintf("the replay ended at %s (%s), the recording at %s", res.Pos, res.Message, o.End.Pos)}
	}
	return o, nil
}

func (e *Engine) rip() uint64 {
	r, _ := e.m.Regs()
	return r.RIP
}
