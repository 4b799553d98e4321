// Shared source: compiled into Peft.Runtime (public) and into the generator and analyzers (internal, PEFT_ROSLYN).
#if PEFT_ROSLYN
namespace Peft.Generators.Rules;
#else
namespace Peft;
#endif

/// <summary>VB-LoRA's pure rules, used both at compile time (the analyzers and the PEFT0010 budget) and at run time
/// (<c>VBLoRAOptions</c>, <c>VBLoRAAdapter</c>).</summary>
#if PEFT_ROSLYN
internal
#else
public
#endif
static class VBLoRARules
{
    /// <summary>Why a Linear(in, out) cannot take vectors of length L (each size must be a positive multiple of L), or null.</summary>
    /// <param name="inFeatures">in_features.</param>
    /// <param name="outFeatures">out_features.</param>
    /// <param name="vectorLength">L.</param>
    /// <returns>Null when both sizes divide, otherwise the reason.</returns>
    public static string? DivisibilityProblem(long inFeatures, long outFeatures, long vectorLength)
    {
        if (vectorLength <= 0) return $"VectorLength must be positive, got {vectorLength}";
        if (inFeatures % vectorLength != 0 || outFeatures % vectorLength != 0)
        {
            return $"VectorLength {vectorLength} must divide both in_features {inFeatures} and out_features {outFeatures}";
        }

        return null;
    }

    /// <summary>Whether top-k is in [1, num_vectors].</summary>
    /// <param name="topK">k.</param>
    /// <param name="numVectors">The bank's vector count.</param>
    /// <returns>True when valid.</returns>
    public static bool TopKFits(long topK, long numVectors) => topK >= 1 && topK <= numVectors;

    /// <summary>VB-LoRA's per-layer trainable parameters on a Linear(in, out): the logits <c>vblora_logits_A</c>
    /// <c>[r, in/L, N]</c> and <c>vblora_logits_B</c> <c>[out/L, r, N]</c>, r·N·(in + out)/L; the bank is counted once per
    /// adapter (<see cref="BankParameterCount"/>).</summary>
    /// <param name="inFeatures">in_features (a multiple of L).</param>
    /// <param name="outFeatures">out_features (a multiple of L).</param>
    /// <param name="rank">r.</param>
    /// <param name="numVectors">N.</param>
    /// <param name="vectorLength">L (positive).</param>
    /// <returns>The count (saturating).</returns>
    public static long ParameterCount(long inFeatures, long outFeatures, long rank, long numVectors, long vectorLength)
    {
        long tiles = SaturatingMath.Add(inFeatures / vectorLength, outFeatures / vectorLength);
        return SaturatingMath.Multiply(SaturatingMath.Multiply(rank, numVectors), tiles);
    }

    /// <summary>The shared vector bank's trainable parameters, N·L, once per adapter.</summary>
    /// <param name="numVectors">N.</param>
    /// <param name="vectorLength">L.</param>
    /// <returns>The count (saturating).</returns>
    public static long BankParameterCount(long numVectors, long vectorLength) => SaturatingMath.Multiply(numVectors, vectorLength);
}
