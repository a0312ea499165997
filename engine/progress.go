package engine

// finalPartEstimate is what the last part adds to the progress total
// besides pg_control (counted from the start): backup_label,
// tablespace_map and the WAL segments it includes (none when wl is nil).
func finalPartEstimate(stop stopResult, wl *walPlan) int64 {
	n := int64(len(stop.LabelFile) + len(stop.TablespaceMap))
	if wl != nil {
		n += int64(len(wl.files)) * wl.segSize
	}
	return n
}
