package postgres

// MaxConnsForTest returns the size limit of the store's pool.
func MaxConnsForTest(s *Store) int32 { return s.pool.Config().MaxConns }
