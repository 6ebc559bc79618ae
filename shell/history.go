package shell

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// readHistory returns the last limit lines of a history file. A missing
// file is an empty history; lines liner could not take back (invalid
// UTF-8, overlong) are dropped rather than losing the whole history.
func readHistory(path string, limit int) ([]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || !utf8.ValidString(l) || len(l) > 4000 {
			continue
		}
		lines = append(lines, l)
		if len(lines) > 2*limit {
			lines = append(lines[:0], lines[len(lines)-limit:]...)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("history: %s: %w", path, err)
	}
	if len(lines) > limit {
		lines = lines[len(lines)-limit:]
	}
	return lines, nil
}

// writeHistory replaces the history file with the last limit non-empty
// lines. It writes a temporary file and renames it over the old one, so a
// crash mid-write leaves the previous history, never a torn one.
func writeHistory(path string, lines []string, limit int) error {
	kept := make([]string, 0, len(lines))
	for _, l := range lines {
		if l != "" {
			kept = append(kept, l)
		}
	}
	if len(kept) > limit {
		kept = kept[len(kept)-limit:]
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".vmrr_history.*")
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	var b strings.Builder
	for _, l := range kept {
		b.WriteString(l + "\n")
	}
	if _, err := tmp.WriteString(b.String()); err != nil {
		tmp.Close()
		return fmt.Errorf("history: %w", err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("history: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return nil
}
