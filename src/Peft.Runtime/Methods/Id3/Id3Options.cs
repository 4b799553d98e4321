namespace Peft;

/// <summary>Settings of ID³ incremental unmasking (<see cref="Id3Unmasking"/>).</summary>
/// <param name="Budget">The budget <c>B</c>: how many entries of the chosen weights train once unmasking is complete (&gt;= 1,
/// at most their entry count).</param>
/// <param name="UnmaskingSteps"><c>T_u</c>: in how many unmasking steps the set grows to <see cref="Budget"/>, <c>⌈B·k/T_u⌉</c>
/// after the <c>k</c>-th (&gt;= 1).</param>
/// <param name="Interval">Training steps between unmasking steps, the first at step 1 (&gt;= 1); the last, at
/// <c>1 + (T_u - 1)·Interval</c>, must fall within <see cref="Training.TrainingOptions.TotalSteps"/>.</param>
/// <param name="Gamma">The exponent <c>γ</c> of the D³ importance <c>|∇θ| / (|θ| + ε)^γ</c>. The paper's exact form is not in
/// its abstract; this library's default is 1, the gradient relative to the weight's size (the relative change a step of
/// the entry makes), which ranks by gradient alone at <c>γ = 0</c> (first-order, Fisher-like saliency) and leans toward
/// small weights as <c>γ</c> grows; any finite value is accepted.</param>
/// <param name="Epsilon"><c>ε</c> (&gt; 0), so that an exact zero weight does not divide by zero.</param>
/// <param name="ExplorationShare">The share of each unmasking step's new entries drawn uniformly at random from the still
/// masked ones (exploration), the rest being the highest D³ scores (exploitation); in [0, 1].</param>
/// <param name="Seed">The seed of the generator the random share draws from (saved in checkpoints).</param>
public sealed record Id3Options(
    long Budget,
    int UnmaskingSteps = 10,
    int Interval = 1,
    double Gamma = 1.0,
    double Epsilon = 1e-8,
    double ExplorationShare = 0.1,
    ulong Seed = 0)
{
    /// <summary>Checks every field against <paramref name="entries"/>, the chosen weights' entry count.</summary>
    /// <param name="entries">How many entries the chosen weights have.</param>
    /// <exception cref="ArgumentException">A field is out of range; the message names it and the fix.</exception>
    public void Validate(long entries)
    {
        if (Budget < 1 || Budget > entries)
        {
            throw new ArgumentException($"Id3Options.Budget = {Budget}: the budget must be between 1 and the {entries} entries of the chosen weights; lower it or choose more weights.", nameof(Budget));
        }

        if (UnmaskingSteps < 1 || Interval < 1)
        {
            throw new ArgumentException($"Id3Options.UnmaskingSteps = {UnmaskingSteps}, Interval = {Interval}: both must be 1 or more.", UnmaskingSteps < 1 ? nameof(UnmaskingSteps) : nameof(Interval));
        }

        if (!double.IsFinite(Gamma))
        {
            throw new ArgumentException($"Id3Options.Gamma = {Gamma}: the exponent must be finite (1 by default).", nameof(Gamma));
        }

        if (!(Epsilon > 0) || !double.IsFinite(Epsilon))
        {
            throw new ArgumentException($"Id3Options.Epsilon = {Epsilon}: it must be positive and finite (1e-8 by default).", nameof(Epsilon));
        }

        if (!(ExplorationShare >= 0 && ExplorationShare <= 1))
        {
            throw new ArgumentException($"Id3Options.ExplorationShare = {ExplorationShare}: the random share must be in [0, 1].", nameof(ExplorationShare));
        }
    }
}
