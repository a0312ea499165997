package failure

import (
	"errors"
	"testing"
)

func TestOneLineText(t *testing.T) {
	for in, want := range map[string]string{
		"":                    "",
		"plain":               "plain",
		"a\nb\r\nc\td":        "a b c d",
		"  lead  and trail  ": "lead and trail",
		"esc\x1b[31mred\x7f!": "esc [31mred !",
		"ünï cödé":            "ünï cödé",
	} {
		if got := OneLineText(in); got != want {
			t.Errorf("OneLineText(%q) = %q, want %q", in, got, want)
		}
	}
	if got := OneLine(errors.New("x:\n  y")); got != "x: y" {
		t.Errorf("OneLine = %q", got)
	}
}
