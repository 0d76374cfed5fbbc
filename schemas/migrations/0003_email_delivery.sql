-- Locale-aware email and reliable delivery.

-- A tenant may send from its own address (else REGISTRAR_MAIL_FROM).
ALTER TABLE tenants ADD COLUMN mail_from text;

-- What the request asked for, so that under --duplicates silent the answer for a taken
-- address can look exactly like a new registration (a stand-in user id, never a real one).
ALTER TABLE registration_requests
    ADD COLUMN email text,
    ADD COLUMN user_name text,
    ADD COLUMN locale text,
    ADD COLUMN shadow_user_id uuid;

-- Resending an activation email reuses the URL the client registered with.
ALTER TABLE activation_tokens ADD COLUMN activation_url text;

ALTER TABLE emails ADD COLUMN error text;
