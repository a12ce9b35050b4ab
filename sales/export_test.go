package sales

// CloneReservation is clone, for the external tests.
var CloneReservation = Reservation.clone
