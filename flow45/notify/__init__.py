"""`flow45 notify`: chosen ledger events of each team posted to webhooks, at least once, in order.

`hooks` is the settings part (which events go where), `events` what an event means to a person,
`post` one HTTP post with its retries, `follow` the loop and the position kept across restarts."""
