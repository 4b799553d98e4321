using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>What <see cref="SiblingProjectionExtensions.FuseSiblingProjections"/> did: the groups it linked and those it
/// left separate, with why.</summary>
/// <param name="Linked">The linked groups.</param>
/// <param name="Skipped">Each declared group left separate: the module path, its member names and the reason.</param>
public sealed record SiblingFusionReport(
    IReadOnlyList<SiblingProjectionGroup> Linked,
    IReadOnlyList<(string ModulePath, IReadOnlyList<string> Members, string Reason)> Skipped);

/// <summary>Links the sibling projections a model declares (<see cref="ISiblingProjections"/>) so that each group runs as one
/// product (<see cref="SiblingProjectionGroup"/>).</summary>
public static class SiblingProjectionExtensions
{
    /// <summary>
    /// Walks <paramref name="model"/> and links every declared group of sibling projections whose members are adapted linear
    /// layers (at least two of a group's members: the others run alone) with frozen weights of one width, device and element
    /// type. Call it after the adapters are applied (the attributes' <c>InitializePeft</c>, or <c>ApplyTargets</c>) and after
    /// moving the model; a later move or dtype conversion is noticed and the buffer rebuilt on the next forward.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="where">Which declared groups to link, by the declaring module's path and the group's member names (for
    /// example only attention's: <c>(path, _) =&gt; path.EndsWith("self_attn")</c>); null links every group.</param>
    /// <returns>The groups linked and the groups left separate, with the reason (groups <paramref name="where"/> leaves out
    /// are in neither list).</returns>
    /// <exception cref="PeftConfigurationException">A declared group names a member the module does not have.</exception>
    public static SiblingFusionReport FuseSiblingProjections(this nn.Module model, Func<string, IReadOnlyList<string>, bool>? where = null)
    {
        var linked = new List<SiblingProjectionGroup>();
        var skipped = new List<(string, IReadOnlyList<string>, string)>();
        foreach (var node in ModuleTree.Walk(model))
        {
            if (node.Module is not ISiblingProjections declaring)
            {
                continue;
            }

            var children = node.Module.named_children().ToDictionary(c => c.name, c => c.module);
            foreach (var group in declaring.SiblingProjections)
            {
                if (where is not null && !where(node.Path, group))
                {
                    continue;
                }

                var missing = group.FirstOrDefault(name => !children.ContainsKey(name));
                if (missing is not null)
                {
                    throw new PeftConfigurationException(
                        $"Module '{Describe(node.Path)}' declares sibling projections [{string.Join(", ", group)}], but it has no child module '{missing}'. " +
                        "List the names the module registers its projections under (its field names).",
                        missing, null);
                }

                var adapted = group.Where(name => children[name] is AdaptedLinear).ToArray();
                if (adapted.Length < 2)
                {
                    skipped.Add((node.Path, group, adapted.Length == 0
                        ? "none of its members is an adapted linear layer"
                        : $"only '{adapted[0]}' is an adapted linear layer (the others are not adapted)"));
                    continue;
                }

                var members = adapted.Select(name => (AdaptedLinear)children[name]).ToArray();
                if (SiblingProjectionGroup.TryLink(node.Path, adapted, members, out var reason) is { } linkedGroup)
                {
                    linked.Add(linkedGroup);
                }
                else
                {
                    skipped.Add((node.Path, adapted, reason!));
                }
            }
        }

        return new SiblingFusionReport(linked, skipped);
    }

    /// <summary>Unlinks every sibling group in <paramref name="model"/>: each layer runs alone again.</summary>
    /// <param name="model">The model.</param>
    /// <returns>How many groups were unlinked.</returns>
    public static int UnfuseSiblingProjections(this nn.Module model)
    {
        var groups = ModuleTree.Layers(model).Select(l => (l.Layer as AdaptedLinear)?.Siblings).Where(g => g is not null).Distinct().ToArray();
        foreach (var group in groups)
        {
            group!.Unlink();
        }

        return groups.Length;
    }

    private static string Describe(string path) => path.Length == 0 ? "(root)" : path;
}
