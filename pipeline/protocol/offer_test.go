package protocol

import (
	"strings"
	"testing"
)

func TestGroupSubjectsAreTheWorkersGroupsWithALLOrLOCAL(t *testing.T) {
	for _, tc := range []struct {
		info WorkerInfo
		want string
	}{
		{WorkerInfo{Groups: []string{"dsp", "mic", "dsp"}}, "marvelo.group.ALL.> marvelo.group.dsp.> marvelo.group.mic.>"},
		{WorkerInfo{}, "marvelo.group.ALL.>"},
		{WorkerInfo{Local: true}, "marvelo.group.LOCAL.>"},
		{WorkerInfo{Groups: []string{"LOCAL"}}, "marvelo.group.ALL.>"}, // LOCAL is the head node's only
		{WorkerInfo{Any: true, Local: true}, "marvelo.group.*.>"},
	} {
		if got := strings.Join(tc.info.GroupSubjects(), " "); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.info, got, tc.want)
		}
	}
}

func TestCheckGroupsRefusesNamesThatWouldHearOtherGroups(t *testing.T) {
	for _, g := range []string{"*", ">", "a.b", ""} {
		if err := (WorkerInfo{Groups: []string{"ok", g}}).CheckGroups(); err == nil {
			t.Errorf("group %q accepted", g)
		}
	}
	if err := (WorkerInfo{Groups: []string{"dsp", "mic-1"}}).CheckGroups(); err != nil {
		t.Errorf("plain groups refused: %v", err)
	}
}

func TestCapacityIsAtLeastLocalSlotsOnTheHeadNode(t *testing.T) {
	if got := (WorkerInfo{Slots: 2}).Capacity(); got != 2 {
		t.Errorf("capacity %d, want 2", got)
	}
	if got := (WorkerInfo{Slots: 2, Local: true}).Capacity(); got != LocalSlots {
		t.Errorf("head node capacity %d, want %d", got, LocalSlots)
	}
}
