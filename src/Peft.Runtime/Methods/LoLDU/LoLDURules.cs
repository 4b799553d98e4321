// Shared source: compiled into Peft.Runtime (public) and into the generator and analyzers (internal, PEFT_ROSLYN).
#if PEFT_ROSLYN
namespace Peft.Generators.Rules;
#else
namespace Peft;
#endif

/// <summary>LoLDU's pure rules, used both at compile time (the PEFT0010 budget) and at run time (<c>LoLDUAdapter</c>).</summary>
#if PEFT_ROSLYN
internal
#else
public
#endif
static class LoLDURules
{
    /// <summary>LoLDU's trainable parameters on a Linear(in, out) at rank r: the diagonal z <c>[r]</c> and the scaling factor
    /// (the triangular factors are frozen).</summary>
    /// <param name="rank">The rank r.</param>
    /// <returns>The count.</returns>
    public static long ParameterCount(long rank) => rank + 1;

    /// <summary>The initial scaling factor α / r.</summary>
    /// <param name="alpha">α.</param>
    /// <param name="rank">r.</param>
    /// <returns>The scaling.</returns>
    public static double Scaling(double alpha, int rank) => alpha / rank;

    /// <summary>
    /// The row permutation of a partial-pivoting LU from LAPACK's pivots (<c>torch.linalg.lu_factor</c>, 1-based: step i swapped
    /// rows i and pivots[i] − 1), as the index map of <c>W = P L U</c>: row <c>i</c> of <c>P L</c> is row <c>result[i]</c> of
    /// <c>L</c>. Never forms the <c>rows × rows</c> matrix P.
    /// </summary>
    /// <param name="pivots">LAPACK's pivots (one per step, min(rows, columns) of them).</param>
    /// <param name="rows">The number of rows.</param>
    /// <returns>The index map, a permutation of 0..rows−1.</returns>
    public static long[] RowsOfPermutedL(System.Collections.Generic.IReadOnlyList<long> pivots, int rows)
    {
        // order[i] = the row of W that step i moved to position i (Pᵀ W = L U, row i of L U is row order[i] of W).
        var order = new long[rows];
        for (int i = 0; i < rows; i++) order[i] = i;
        for (int i = 0; i < pivots.Count; i++)
        {
            long j = pivots[i] - 1;
            (order[i], order[j]) = (order[j], order[i]);
        }

        // W row order[i] = (L U) row i, so (P L) row order[i] = L row i: invert the map.
        var result = new long[rows];
        for (int i = 0; i < rows; i++) result[order[i]] = i;
        return result;
    }
}
