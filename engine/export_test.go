package engine

// SetAfterDiscovery lets tests act once the tablespaces are listed.
func SetAfterDiscovery(o *Options, f func()) { o.afterDiscovery = f }
