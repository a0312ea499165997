package progress

import "testing"

func TestDoneNeverAboveTotal(t *testing.T) {
	var p Counter
	p.SetTotal(100)
	p.Add(60)
	if d, tot, _ := p.Snapshot(); d != 60 || tot != 100 {
		t.Fatalf("snapshot %d/%d, want 60/100", d, tot)
	}
	p.Add(60) // the work outgrew its estimate
	if d, tot, _ := p.Snapshot(); d != 120 || tot != 120 {
		t.Fatalf("snapshot %d/%d, want 120/120", d, tot)
	}
	p.AddTotal(50)
	if d, tot, _ := p.Snapshot(); d != 120 || tot != 150 || p.Estimate() != 150 {
		t.Fatalf("snapshot %d/%d (estimate %d), want 120/150", d, tot, p.Estimate())
	}
	p.Finish()
	if d, tot, _ := p.Snapshot(); d != 120 || tot != 120 {
		t.Fatalf("after Finish %d/%d, want 120/120", d, tot)
	}
	var nilCounter *Counter
	nilCounter.AddTotal(1)
	nilCounter.Finish()
	if d, tot, _ := nilCounter.Snapshot(); d != 0 || tot != 0 || nilCounter.Estimate() != 0 {
		t.Fatal("nil counter reports work")
	}
}
