namespace Peft;

/// <summary>Settings of SPT (<see cref="Spt"/>).</summary>
/// <param name="Budget">τ: how many entries of the chosen weights are selected, globally by sensitivity (&gt;= 1, at most their entry count).</param>
/// <param name="SensitivityBatches">How many batches the sensitivity <c>S = Σ_b g_b²</c> sums over before training (8 in the paper).</param>
/// <param name="Rank">The rank <c>r</c> of the LoRA a structured matrix gets, also in <c>P_struct = r(in + out)</c> (8 in the paper).</param>
/// <param name="Alpha">α: a matrix is structured when its count reaches <c>P_struct/α</c> (5 in the paper).</param>
/// <param name="Beta">β: a vector is tuned fully when its count reaches <c>dim/β</c> (5 in the paper).</param>
/// <param name="LoRAAlpha">The LoRA scaling numerator of structured matrices (<c>s = LoRAAlpha/r</c>; 16, PEFT's usual 2r).</param>
public sealed record SptOptions(long Budget, int SensitivityBatches = 8, int Rank = 8, double Alpha = 5, double Beta = 5, double LoRAAlpha = 16)
{
    /// <summary>Checks every field; <paramref name="entries"/> is the chosen weights' entry count.</summary>
    /// <param name="entries">How many entries the chosen weights have.</param>
    /// <exception cref="ArgumentException">A field is out of range; the message names it and the fix.</exception>
    public void Validate(long entries)
    {
        if (Budget < 1 || Budget > entries)
        {
            throw new ArgumentException($"SptOptions.Budget = {Budget}: the budget τ must be between 1 and the {entries} entries of the chosen weights; lower it or choose more weights.", nameof(Budget));
        }

        if (SensitivityBatches < 1)
        {
            throw new ArgumentException($"SptOptions.SensitivityBatches = {SensitivityBatches}: at least one batch is needed to measure sensitivities (8 in the paper).", nameof(SensitivityBatches));
        }

        if (Rank < 1)
        {
            throw new ArgumentException($"SptOptions.Rank = {Rank}: the LoRA rank must be 1 or more (8 in the paper).", nameof(Rank));
        }

        if (!(Alpha > 0) || !(Beta > 0) || !double.IsFinite(Alpha) || !double.IsFinite(Beta))
        {
            throw new ArgumentException($"SptOptions.Alpha = {Alpha}, Beta = {Beta}: both must be positive and finite (5 in the paper).", !(Alpha > 0) || !double.IsFinite(Alpha) ? nameof(Alpha) : nameof(Beta));
        }

        if (!(LoRAAlpha > 0) || !double.IsFinite(LoRAAlpha))
        {
            throw new ArgumentException($"SptOptions.LoRAAlpha = {LoRAAlpha}: it must be positive and finite.", nameof(LoRAAlpha));
        }
    }
}
