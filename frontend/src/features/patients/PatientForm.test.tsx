import { screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { renderWithApp } from '../../test/render';
import { PatientForm } from './PatientForm';
import { emptyDraft } from './registration';

function setup(clinical = true) {
  const onSubmit = vi.fn();
  renderWithApp(<PatientForm initial={emptyDraft()} mode="create" busy={false} onSubmit={onSubmit} onCancel={vi.fn()} clinical={clinical} />);
  return { onSubmit, user: userEvent.setup() };
}

describe('PatientForm', () => {
  it('shows what is missing, in words, and does not submit', async () => {
    const { onSubmit, user } = setup();
    await user.click(screen.getByRole('button', { name: 'Register patient' }));
    expect(screen.getByText('Enter the given name.')).toBeInTheDocument();
    expect(screen.getByText('Enter the family name.')).toBeInTheDocument();
    expect(screen.getByText('Enter the date of birth.')).toBeInTheDocument();
    expect(onSubmit).not.toHaveBeenCalled();
  });

  it('validates a field when it is left, not before', async () => {
    const { user } = setup();
    const email = screen.getByLabelText('Email');
    await user.type(email, 'nope');
    expect(screen.queryByText('Enter an email address like name@example.com.')).not.toBeInTheDocument();
    await user.tab();
    expect(screen.getByText('Enter an email address like name@example.com.')).toBeInTheDocument();
  });

  it('submits a complete draft with an emergency contact', async () => {
    const { onSubmit, user } = setup();
    await user.type(screen.getByLabelText(/Given name/), 'Mei');
    await user.type(screen.getByLabelText(/Family name/), 'Chen');
    await user.selectOptions(screen.getByLabelText(/Sex/), 'female');
    await user.type(screen.getByLabelText(/Date of birth/), '1980-02-03');
    await user.click(screen.getByRole('button', { name: 'Add an emergency contact' }));
    await user.type(screen.getByLabelText("Contact's name"), 'Li Wei');
    await user.type(screen.getAllByLabelText('Phone')[1]!, '555 0199');
    await user.click(screen.getByRole('button', { name: 'Register patient' }));
    expect(onSubmit).toHaveBeenCalledOnce();
    expect(onSubmit.mock.calls[0]?.[0]).toMatchObject({ given: 'Mei', family: 'Chen', birthDate: '1980-02-03', contacts: [{ name: 'Li Wei', phone: '555 0199' }] });
  });

  it('on edit, changes the status of a recorded allergy', async () => {
    const onSubmit = vi.fn();
    const initial = {
      ...emptyDraft(), given: 'Mei', family: 'Chen', gender: 'female' as const, birthDate: '1980-02-03',
      recordedAllergies: [{ id: 'a1', substance: 'Peanut', status: 'active' as const }],
    };
    renderWithApp(<PatientForm initial={initial} mode="edit" busy={false} onSubmit={onSubmit} onCancel={vi.fn()} clinical />);
    const user = userEvent.setup();
    await user.selectOptions(screen.getByLabelText('Peanut: status'), 'Recorded in error');
    await user.click(screen.getByRole('button', { name: 'Save changes' }));
    expect(onSubmit.mock.calls[0]?.[0]).toMatchObject({ recordedAllergies: [{ id: 'a1', status: 'entered-in-error' }] });
  });

  it('offers allergies only to roles that may record clinical content', () => {
    setup(false);
    expect(screen.queryByRole('button', { name: 'Add an allergy' })).not.toBeInTheDocument();
  });
});
